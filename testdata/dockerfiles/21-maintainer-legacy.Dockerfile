FROM centos:7
MAINTAINER Jane Doe <jane@example.com>
ENV LANG en_US.UTF-8
ENV LC_ALL en_US.UTF-8
RUN yum -y install httpd && yum clean all
EXPOSE 80
ADD index.html /var/www/html/
CMD ["/usr/sbin/httpd", "-D", "FOREGROUND"]
