FROM php:8.3-apache
RUN docker-php-ext-install pdo pdo_mysql opcache \
 && a2enmod rewrite headers
COPY --from=composer:2 /usr/bin/composer /usr/bin/composer
WORKDIR /var/www/html
COPY composer.json composer.lock ./
RUN composer install --no-dev --no-scripts --prefer-dist
COPY . .
RUN chown -R www-data:www-data storage bootstrap/cache
EXPOSE 80 443
